"""Server-rendered pages: chat.py (home, conversations), settings.py (provider settings)."""
