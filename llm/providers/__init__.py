"""Provider adapters: one module per wire protocol, no Django imports."""
