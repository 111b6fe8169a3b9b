"""Reading and plotting what G-Blend did: histories and plots."""
