"""The drawn demo benchmark: images, codes, captions and writers of the release format."""
