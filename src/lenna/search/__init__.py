"""Architecture search: data, supernet training and derivation."""
