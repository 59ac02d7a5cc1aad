"""JouleScale."""
