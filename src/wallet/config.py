"""Settings, read from the environment once, at start-up."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field, PositiveInt, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["debug", "info", "warning", "error"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WALLET_", extra="ignore")

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/wallet",
        validation_alias=AliasChoices("DATABASE_URL", "WALLET_DATABASE_URL"),
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "WALLET_REDIS_URL"),
    )
    # Prefixes every Redis key and channel, so that several deployments (or test runs)
    # can share one Redis without seeing each other.
    redis_prefix: str = "wallet"
    # Seconds to wait on Redis before treating it as down (reads then go to PostgreSQL).
    redis_timeout: float = 0.5
    # Seconds a cached wallet or history page lives at most. Commits keep the cache current;
    # this only bounds how long a change that never reached Redis can go unseen.
    cache_ttl: float = 60.0
    # "production" changes only defaults (below, in _production_defaults); a setting given
    # explicitly always wins.
    environment: Literal["development", "production"] = "development"
    # Connections per process to PostgreSQL.
    database_pool_size: int = 16
    # Pages on these origins may open a subscription WebSocket ("*" for any).
    allowed_origins: list[str] = Field(default_factory=list)
    # GraphiQL on GET /graphql. Off in production by default.
    graphiql: bool = True
    # GraphiQL needs it. A production deployment answers no questions about its schema unless
    # told to, or told to serve GraphiQL (the schema is published as schema.graphql).
    introspection: bool = True
    # How `wallet serve` and `wallet worker` log to standard error: one JSON object a line
    # (production's default), else plain lines for a person.
    json_logs: bool = False
    # `wallet serve` and `wallet worker`; their --log-level, when given, wins.
    log_level: LogLevel = "info"
    # Per caller (the one its bearer token names; per address with tokens not required), over
    # every API process; `limits` notation.
    rate_limits_enabled: bool = True
    rate_limit: str = "100/second;3000/minute"
    mutation_rate_limit: str = "20/second;600/minute"
    # Proxies whose X-Forwarded-For names the client (uvicorn's forwarded_allow_ips: addresses
    # or networks, "*" for any). None by default: the client is the socket's peer.
    forwarded_allow_ips: list[str] = Field(default_factory=list)
    max_body_bytes: int = 64 * 1024
    # A request of transferBatch mutations alone may be this large: 1,000 transfers in its
    # variables take about 150 KB, and up to 480 KB with keys of 255 characters. Any other
    # keeps max_body_bytes.
    max_batch_body_bytes: int = 512 * 1024
    max_query_depth: int = 10
    max_aliases: int = 30
    max_query_tokens: int = 2000
    # Operations (subscriptions, mostly) one WebSocket may hold open at once: each holds a
    # task and a Redis subscription in the API process until it ends.
    max_socket_operations: int = 20
    # The most fields one operation may return in the worst case (every field counts one;
    # a list counts its items, from first/last, times their nesting); refused before it runs.
    # The costliest document 5,000 admits (every field of 100 transactions from 100 senders,
    # 4,912) held the event loop about 60 ms on the development machine; 15,000 held it over
    # 100 ms. A history page of 100 with every field and both wallets costs about 2,500.
    max_query_cost: int = 5_000
    # A PENDING transaction untouched this long is queued again by the worker's sweeper.
    sweep_after_seconds: float = 5.0
    sweep_interval_seconds: float = 1.0
    # How often each worker looks for holds past their expiry, and releases them.
    hold_expiry_interval_seconds: float = 1.0
    # Most transactions one unit of work of a worker settles, its wallets locked meanwhile.
    # Batches of 100 transfers went from 4,500 to 5,500 a second when this went from 256 to
    # 1,024 (bench, 2 cores); a deposit to one of the wallets may wait that long (~0.2 s).
    settle_batch_size: PositiveInt = 1024
    # The stream hands a dead consumer's unacknowledged job to another after this long.
    redeliver_after_ms: int = 60_000
    # Seconds a stopping worker gives its running jobs before it exits.
    shutdown_grace_seconds: float = 7.0
    # Apply withdrawals and transfers inside the request instead of queueing them for a
    # worker. For tests and tools that run no worker; a deployment leaves it off.
    settle_inline: bool = False
    # Bearer tokens (web/tokens.py, `wallet token`). Keys come from one place: the shared
    # secret (HS256, at least 32 bytes) or the identity provider's JWKS (RS256/ES256 keys).
    # Every request must name its caller with a bearer token (else HTTP 401, or a WebSocket
    # closed with 4401), and `wallet serve` refuses to start without keys. Turned off, every
    # request is one caller who may do anything (web/authentication.py): for a throwaway
    # experiment on one's own machine only, so production refuses it.
    require_tokens: bool = True
    jwt_secret: SecretStr | None = None
    jwks_url: str | None = None
    # Checked when set: a token must name this issuer (iss) and this audience (aud).
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # Seconds of clock difference forgiven on exp, nbf and iat.
    jwt_leeway_seconds: float = 5.0

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("jwt_secret", "jwks_url", "jwt_issuer", "jwt_audience", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # `WALLET_JWKS_URL=` in a compose file means "not set", not a URL to fetch.
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _production_defaults(self) -> Settings:
        # Production's defaults, in one place; a setting given explicitly is left as given.
        given = self.model_fields_set
        if "graphiql" not in given:
            self.graphiql = not self.production
        if "introspection" not in given:
            self.introspection = self.graphiql or not self.production
        if "json_logs" not in given:
            self.json_logs = self.production
        if self.production and not self.require_tokens:
            raise ValueError("WALLET_REQUIRE_TOKENS=false would let anyone move any money")
        return self

    @property
    def production(self) -> bool:
        return self.environment == "production"
