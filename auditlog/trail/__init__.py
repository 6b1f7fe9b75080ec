"""Keeping the trail honest: append-only enforcement, sealing and verification, retention."""
