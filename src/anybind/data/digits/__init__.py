"""The built-in digits benchmark: images, speech and text of the ten digits, entirely offline."""
