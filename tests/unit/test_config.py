import pytest

from focus_app.config import ConfigError, Settings

GOOD = {
    "DATABASE_URL": "postgresql://postgres@127.0.0.1/focus",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "JWT_SECRET": "a" * 8 + "b" * 8 + "c" * 16,
    "ADMIN_API_KEY": "k" * 20 + "x" * 12,
}


def test_a_complete_environment_loads_with_defaults():
    settings = Settings.from_env(GOOD)
    assert settings.profile_update_interval_seconds == 300
    assert settings.broker_url == settings.result_backend == GOOD["REDIS_URL"]
    assert settings.is_production


@pytest.mark.parametrize(
    "override,setting",
    [
        ({"DATABASE_URL": ""}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"JWT_SECRET": ""}, "JWT_SECRET"),
        ({"JWT_SECRET": "secret"}, "JWT_SECRET"),
        ({"ADMIN_API_KEY": "short"}, "ADMIN_API_KEY"),
        ({"JWT_ALGORITHM": "RS256"}, "JWT_ALGORITHM"),
        ({"FOCUS_ENV": "staging"}, "FOCUS_ENV"),
        ({"FOCUS_TIMEZONE": "Mars/Olympus"}, "FOCUS_TIMEZONE"),
        ({"PROFILE_BATCH_SIZE": "many"}, "PROFILE_BATCH_SIZE"),
        ({"PROFILE_BATCH_SIZE": "0"}, "PROFILE_BATCH_SIZE"),
        ({"TASK_TIME_LIMIT_SECONDS": "7200"}, "BROKER_VISIBILITY_TIMEOUT_SECONDS"),
        ({"TASK_SOFT_TIME_LIMIT_SECONDS": "400"}, "TASK_SOFT_TIME_LIMIT_SECONDS"),
        ({"LLM_PROVIDER": "oracle"}, "LLM_PROVIDER"),
        ({"LLM_PROVIDER": "anthropic"}, "LLM_API_KEY"),
        ({"LLM_PROVIDER": "openai"}, "LLM_BASE_URL"),
        ({"LLM_COST_INPUT_PER_MTOK": "-1"}, "LLM_COST_INPUT_PER_MTOK"),
        ({"FLOWER_URL": "127.0.0.1:5555"}, "FLOWER_URL"),
    ],
)
def test_a_bad_setting_stops_start_up_naming_it(override, setting):
    with pytest.raises(ConfigError) as error:
        Settings.from_env({**GOOD, **override})
    assert error.value.setting == setting
    assert str(error.value).startswith(f"invalid setting {setting}:")
    assert "\n" not in str(error.value)


def test_the_flower_link_follows_flower_port_unless_flower_url_is_set():
    assert Settings.from_env(GOOD).flower_url == "http://127.0.0.1:5555"
    assert Settings.from_env({**GOOD, "FLOWER_PORT": "5600"}).flower_url == "http://127.0.0.1:5600"
    flower = "https://ops.example.org/flower/"
    assert Settings.from_env({**GOOD, "FLOWER_URL": flower, "FLOWER_PORT": "5600"}).flower_url == flower


def test_development_generates_and_keeps_missing_secrets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {key: value for key, value in GOOD.items() if key not in ("JWT_SECRET", "ADMIN_API_KEY")}
    env["FOCUS_ENV"] = "development"

    first = Settings.from_env(env)
    second = Settings.from_env(env)

    assert first.generated_secrets == ("JWT_SECRET", "ADMIN_API_KEY")
    assert second.generated_secrets == ()
    assert first.jwt_secret == second.jwt_secret and len(first.jwt_secret) >= 32
    assert (tmp_path / ".data" / "dev-secrets.json").stat().st_mode & 0o777 == 0o600


def test_production_never_generates_secrets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {key: value for key, value in GOOD.items() if key != "JWT_SECRET"}
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        Settings.from_env(env)
    assert not (tmp_path / ".data").exists()
