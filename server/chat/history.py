"""OpenAI chat messages as a `Conversation`: system text, earlier user/assistant turns, the question.

The question is the last user message; messages after it are ignored. System and developer messages
before it make the system text. Each earlier user message opens a turn and the assistant messages after
it are that turn's answer; consecutive user (or assistant) messages are joined by a newline, an
assistant message before any user message is dropped, and tool and function messages are ignored.
"""

from http import HTTPStatus

from kotae.rag.conversation import Conversation, Turn
from kotae.server.chat.protocol import ChatMessage
from kotae.server.core.errors import APIError


def _joined(parts: list[str]) -> str:
    return "\n".join(part for part in (p.strip() for p in parts) if part)


def conversation_of(messages: list[ChatMessage]) -> Conversation:
    last_user = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), None)
    if last_user is None:
        raise APIError(
            HTTPStatus.UNPROCESSABLE_ENTITY, "messages: no user message to answer", "no_user_message"
        )
    system: list[str] = []
    turns: list[tuple[list[str], list[str]]] = []
    for message in messages[:last_user]:
        if message.role in ("system", "developer"):
            system.append(message.text())
        elif message.role == "user":
            if not turns or turns[-1][1]:
                turns.append(([], []))
            turns[-1][0].append(message.text())
        elif message.role == "assistant" and turns:
            turns[-1][1].append(message.text())
    return Conversation(
        question=messages[last_user].text(),
        turns=tuple(Turn(_joined(asked), _joined(answered)) for asked, answered in turns),
        system=_joined(system),
    )
