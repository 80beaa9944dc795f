"""Web pages, driven through the Flask test client."""
