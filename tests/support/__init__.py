"""Test support: the environment each test module runs in, and the services as real processes."""
