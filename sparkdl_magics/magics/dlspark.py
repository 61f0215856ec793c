"""%dlspark: show the attached Spark session, or attach to another one."""
from __future__ import annotations

from typing import Any

from ..options import MagicCall, MagicSpec, Option, as_bool, as_str
from .runner import Context

SPEC = MagicSpec(
    name="dlspark",
    summary="Show the Spark session the magics use (classic or Connect, master, version, "
            "executors), or attach to another one.",
    is_cell=False,
    options=(
        Option("master", None, "start a classic session on this master "
               "(local[4], local-cluster[2,1,1024], spark://host:7077, yarn, ...)", as_str),
        Option("remote", None, "attach to Spark Connect / Databricks Connect "
               "(sc://host:15002) or start a local Connect server (local[2])", as_str),
        Option("conf", None, "extra Spark settings for a session started here, "
               "as 'key=value,key2=value2'", as_str),
        Option("stop", False, "stop the current session", as_bool),
    ),
)


def _parse_conf(text: Any) -> dict:
    from ..errors import OptionError
    conf = {}
    for item in str(text or "").split(","):
        if not item.strip():
            continue
        key, eq, value = item.partition("=")
        if not eq:
            raise OptionError(f"option 'conf': expected key=value, got {item!r}")
        conf[key.strip()] = value.strip()
    return conf


def run(call: MagicCall, ctx: Context) -> Any:
    from .. import session
    opts = call.options
    if opts["stop"]:
        session.stop()
        print("Spark session stopped.")
        return None
    if opts["master"] or opts["remote"]:
        spark = session.attach(master=opts["master"], remote=opts["remote"],
                               conf=_parse_conf(opts["conf"]))
    else:
        spark = ctx.spark()
    return session.describe(spark)
