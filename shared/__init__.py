"""What two or more surgegate processes need: settings, database, Redis, tokens, metrics, schema."""
