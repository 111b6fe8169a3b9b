"""What every layer uses: warning categories and messages, atomic file writes."""
