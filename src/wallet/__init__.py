"""wallet: a digital wallet backend served as a GraphQL API."""
