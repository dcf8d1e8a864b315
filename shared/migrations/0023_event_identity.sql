-- Issue 10, "Identity to the level an event requires": an event's OpenID Connect identity provider.
-- Attributes a rule set marks "verified" come from an ID token this provider issued (shared/identity.py).
-- acr_values are the provider's assurance levels, lowest first; a token's acr must be min_acr or above.
CREATE TABLE event_identity (
    event_id    text PRIMARY KEY REFERENCES events (event_id),
    issuer      text NOT NULL CHECK (char_length(issuer) BETWEEN 1 AND 500),
    audience    text NOT NULL CHECK (char_length(audience) BETWEEN 1 AND 500),
    jwks_url    text NOT NULL CHECK (jwks_url ~ '^https?://' AND char_length(jwks_url) <= 1000),
    acr_values  text[] NOT NULL DEFAULT '{}',
    min_acr     text CHECK (min_acr IS NULL OR min_acr = ANY (acr_values)),
    algorithms  text[] NOT NULL CHECK (cardinality(algorithms) >= 1),
    updated_at  timestamptz NOT NULL,
    updated_by  text NOT NULL
);
