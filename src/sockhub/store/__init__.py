"""What the hub must not do itself: persistence and cross-process delivery."""
