"""The booking API behind the waiting room."""
