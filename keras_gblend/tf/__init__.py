"""TensorFlow-only parts: distribution strategies and SavedModel export."""
