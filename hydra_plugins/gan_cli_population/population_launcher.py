"""Hydra's plugin for ``hydra/launcher=population`` (gan-cli): the work is gan_cli.cli.population's."""

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.plugins.launcher import Launcher


@dataclass
class PopulationLauncherConf:
    _target_: str = "hydra_plugins.gan_cli_population.population_launcher.PopulationLauncher"
    max_members: Optional[int] = None  # at most this many members train at once (null: as many as memory allows)


ConfigStore.instance().store(group="hydra/launcher", name="population", node=PopulationLauncherConf,
                             provider="gan-cli")


class PopulationLauncher(Launcher):
    def __init__(self, max_members: Optional[int] = None) -> None:
        self.max_members = max_members
        self.config = self.hydra_context = self.task_function = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        from gan_cli.cli.population import launch

        return launch(self, job_overrides, initial_job_idx)
