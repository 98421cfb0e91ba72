"""PostgreSQL: tables, repositories that map rows to domain objects, the unit of work."""
