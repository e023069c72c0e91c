"""fundhub.callback_dispatcher."""
