"""visrec: matrix factorization for items with pictures."""
__version__ = "0.1.0"
