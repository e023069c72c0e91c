"""Plays WeChat Pay (APIv3) and Alipay: signs with its own keys, creates payments, notifies with
the channels' retries, processes refunds."""
