"""A Backstop hook plugin in Python (componentize-py, world `hook-plugin`).

It annotates every finished backup with the number of facts it saw, and vetoes a backup
at pre-backup when its `block` setting is true (the admin must grant the veto for that to
stop the job).
"""

from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import HookContext, HookOutcome, HookOutcome_Proceed, HookOutcome_Veto, HookPoint, LogLevel


class Hooks(exports.Hooks):
    def on_hook(self, ctx: HookContext) -> HookOutcome:
        host.log(LogLevel.INFO, f"python-hello at {ctx.point.name} for job {ctx.job.job_id}")
        if ctx.point == HookPoint.PRE_BACKUP and host.config_get("block") == "true":
            return HookOutcome_Veto("python-hello: backups are blocked by its settings")
        if ctx.point == HookPoint.POST_BACKUP:
            return HookOutcome_Proceed([f"python-hello saw {len(ctx.job.facts)} facts"])
        return HookOutcome_Proceed([])
