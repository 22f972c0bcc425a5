"""The benchmark data: release readers, decryption, subsets, attributes, captions, labels."""
