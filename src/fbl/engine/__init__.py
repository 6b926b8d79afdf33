"""Training and evaluation machinery: plain functions a person can read top to bottom."""
