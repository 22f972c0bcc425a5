"""What the CLIP and SD training stages share."""
