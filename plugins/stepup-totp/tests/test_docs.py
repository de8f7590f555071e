"""The documentation's examples run: the unattended authenticator app of docs/plugins/totp.md,
including its claim that a second step-up inside one time step is refused as a replay."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import stepup_totp.plugin

from stepup_core import errors
from stepup_core.testing.stack import StepUpStack, session_token

DOC_PAGE = Path(__file__).resolve().parents[3] / "docs" / "plugins" / "totp.md"


def unattended_example() -> str:
    text = DOC_PAGE.read_text(encoding="utf-8")
    section = text[text.index("### Unattended runs") :]
    [example] = re.findall(r"```python\n(.*?)```", section, flags=re.S)[:1]
    return example


async def run_example(example: str, **names: Any) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(f"async def example({', '.join(names)}):\n{textwrap.indent(example, '    ')}\n    return locals()", namespace)
    return dict(await namespace["example"](**names))


async def test_the_unattended_example_runs() -> None:
    async with StepUpStack.start(plugins=[stepup_totp.plugin]) as stack:
        done = await run_example(
            unattended_example(), url=stack.base_url, session_token=session_token("alice"), clock=stack.clock
        )
        assert done["device"].method == "totp"
        assert done["client"].jar.peek("wallet:export") is not None


async def test_a_second_step_up_inside_one_time_step_is_a_replay() -> None:
    """What the page says after the example, run inside the example's own client block."""
    shown = "    print(app.code())                        # what the app shows now\n"
    assert shown in unattended_example()
    within_the_step = unattended_example().replace(
        shown,
        "    with raises(ReplayDetected):\n"
        "        await client.prompt_step_up_auth(\"user:update\")\n"
        "    clock.advance(30)\n"
        "    await client.prompt_step_up_auth(\"user:update\")\n",
    )
    without_waiting = unattended_example().replace("    clock.advance(30)", "    pass")
    names = {"raises": pytest.raises, "ReplayDetected": errors.ReplayDetected}
    async with StepUpStack.start(plugins=[stepup_totp.plugin], users=["alice", "bob"]) as stack:
        done = await run_example(
            within_the_step, url=stack.base_url, session_token=session_token("alice"), clock=stack.clock, **names
        )
        assert done["client"].jar.peek("user:update") is not None
        with pytest.raises(errors.ReplayDetected):
            bob = session_token("bob")
            await run_example(without_waiting, url=stack.base_url, session_token=bob, clock=stack.clock)
