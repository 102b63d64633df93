"""Services: a name, a protocol class and the defaults it runs with."""
