"""Thin resolvers: read the input, call a use case, map the outcome to the contract's types."""
