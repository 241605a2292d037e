"""glimpse: an image service for clouds that speaks the OpenStack Images API."""

__version__ = "0.1.0"
