"""`lenna demo`: the whole loop on embedded defaults."""
