"""What an event is: its one definition, its fields' rules, its validation, its stored formats, its ids."""
