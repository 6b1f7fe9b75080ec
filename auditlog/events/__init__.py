"""What an event is: its one definition, its validation, its stored formats, its ids."""
