"""Business rules of the backend: users and keys, quotas, jobs, webhooks. No HTTP here."""
