"""The wallet's rules. Standard library only: nothing here knows of SQL, GraphQL or Redis."""
