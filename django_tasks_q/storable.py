"""Text every store can hold: PostgreSQL's text and jsonb refuse NUL, and no
store can encode a lone surrogate to UTF-8. Used where text is checked
(arguments, unique keys) and where it is made safe (an error's message)."""


def unstorable_in(text: str) -> str | None:
    """What in ``text`` a store cannot hold, or None if nothing."""
    if "\x00" in text:
        return "a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate"
    return None


def storable(text: str) -> str:
    """``text`` with NUL and lone surrogates escaped as ``repr`` does, so
    that any store can hold it (an error's message or traceback, say)."""
    if unstorable_in(text) is None:
        return text
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
