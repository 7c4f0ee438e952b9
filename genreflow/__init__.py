"""genreflow: a music-genre classifier built as a distributed batch pipeline."""

__version__ = "0.1.0"
