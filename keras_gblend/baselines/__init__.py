"""Competing methods kept for comparison: OGM-GE."""
