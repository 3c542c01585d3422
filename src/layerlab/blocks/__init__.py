"""Built-in blocks; importing this package registers them."""
