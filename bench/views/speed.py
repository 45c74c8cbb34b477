"""``perbench bench`` measurements shaped for reading: the newest figure per machine and
training setting, PERBench beside its plain-PyTorch reference and the ratio's target."""
from __future__ import annotations

import json

import pandas as pd

from bench.formats import format_number


def latest_speed(speed: pd.DataFrame) -> pd.DataFrame:
    """The newest measurement of each figure on each machine (host, hardware, device) and
    training setting (precision, layout, compile), shaped for reading: PERBench beside its
    reference and the ratio's target. A later bench of some figures (say, only the
    quickstart) leaves the other figures' latest values shown."""
    if speed.empty:
        return pd.DataFrame()
    speed = speed.assign(setting=speed["detail"].map(_speed_setting))
    keys = ["host", "hardware", "device_name", "figure", "setting"]
    rows = (speed.sort_values("created_at", kind="stable")
            .groupby(keys, dropna=False, sort=False).tail(1)
            .sort_values(["host", "hardware", "device_name", "created_at"], kind="stable"))
    num = format_number
    return pd.DataFrame({
        "machine": [f"{h} · {d} · {hw}" for h, d, hw in
                    zip(rows["host"], rows["device_name"], rows["hardware"])],
        "figure": [f"{f} ({s})" if s else f for f, s in zip(rows["figure"], rows["setting"])],
        "PERBench": rows["value"].map(num),
        "reference": rows["reference"].map(num), "unit": rows["unit"],
        "ratio": rows["ratio"].map(num), "ratio is": rows["ratio_meaning"],
        "target met": rows["target_met"].map({True: "yes", False: "no"}).fillna(""),
        "measured": rows["created_at"].dt.strftime("%Y-%m-%d"),
    }).reset_index(drop=True)


def _speed_setting(detail: str | None) -> str:
    """How a training figure ran, from its detail ("bf16, channels_last, compiled"); ""
    for the default (fp32, NCHW, eager) and for figures that do not train."""
    try:
        d = json.loads(detail) if detail else {}
    except ValueError:
        return ""
    parts = [d["precision"]] if d.get("precision", "fp32") != "fp32" else []
    parts += [name for key, name in (("channels_last", "channels_last"), ("compile", "compiled"))
              if d.get(key)]
    return ", ".join(parts)
