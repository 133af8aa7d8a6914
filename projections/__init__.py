"""Read models built only from events (progress, package history, agent inventory, pending timers)."""
