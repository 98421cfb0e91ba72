"""The GraphQL types of the public contract: no business rules, only shapes and mapping."""
