from __future__ import annotations

from email.message import Message

from parsers.recent import Recent


def test_a_result_is_found_again_for_the_same_object_in_the_same_state() -> None:
    recent: Recent[Message, str] = Recent(2)
    message = Message()
    recent.put(message, ("text/plain",), "parsed")
    assert recent.get(message, ("text/plain",)) == "parsed"
    assert recent.get(message, ("text/html",)) is None  # the object changed since
    assert recent.get(Message(), ("text/plain",)) is None  # another object


def test_only_the_last_few_are_kept_and_nothing_is_kept_alive() -> None:
    recent: Recent[Message, int] = Recent(2)
    first, second, third = Message(), Message(), Message()
    for n, message in enumerate((first, second, third)):
        recent.put(message, "s", n)
    assert recent.get(first, "s") is None
    assert (recent.get(second, "s"), recent.get(third, "s")) == (1, 2)
    del third, message  # the loop variable held it too
    assert [ref() is None for ref, _, _ in recent._entries] == [True, False]


def test_an_object_that_cannot_be_weakly_referenced_is_simply_not_remembered() -> None:
    recent: Recent[object, str] = Recent(2)
    recent.put(42, "s", "value")
    assert recent.get(42, "s") is None
