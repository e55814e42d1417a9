"""Datasets and splits. ``fashion_mnist`` holds the verified loader; ``splits`` the seeded
stratified splitting that both pipelines use."""
