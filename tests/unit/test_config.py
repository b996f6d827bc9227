import pytest

from focus_app.config import ConfigError, Settings

GOOD = {
    "DATABASE_URL": "postgresql://postgres@127.0.0.1/focus",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "JWT_SECRET": "q8Vz-3JfLw0_pR7nXk2sT9bYcE4mHa6u",
    "ADMIN_API_KEY": "Zt5rK0wN-8yQe2_LpV7cJx3MbF9hGd1s",
}


@pytest.fixture(autouse=True)
def outside_any_checkout(tmp_path, monkeypatch):
    """No .data/ of a running `make run` in the working directory changes what these tests see."""
    monkeypatch.chdir(tmp_path)


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
        ({"LLM_TOKENS_PER_MINUTE": "lots"}, "LLM_TOKENS_PER_MINUTE"),
        ({"LLM_TOKENS_PER_MINUTE": "0"}, "LLM_TOKENS_PER_MINUTE"),
        ({"LLM_REQUESTS_PER_MINUTE": "-3"}, "LLM_REQUESTS_PER_MINUTE"),
        ({"LLM_USER_DAILY_TOKENS": "1e6"}, "LLM_USER_DAILY_TOKENS"),
        ({"LLM_LIMIT_WINDOW_SECONDS": "0"}, "LLM_LIMIT_WINDOW_SECONDS"),
        ({"FLOWER_URL": "127.0.0.1:5555"}, "FLOWER_URL"),
        ({"CORS_ORIGINS": "https://app.example.org/path"}, "CORS_ORIGINS"),
        ({"CORS_ORIGINS": "*"}, "CORS_ORIGINS"),
        ({"FLOWER_BASIC_AUTH": "operator"}, "FLOWER_BASIC_AUTH"),
    ],
)
def test_a_bad_setting_stops_start_up_naming_it(override, setting):
    with pytest.raises(ConfigError) as error:
        Settings.from_env({**GOOD, **override})
    assert error.value.setting == setting
    assert str(error.value).startswith(f"invalid setting {setting}:")
    assert "\n" not in str(error.value)


def test_llm_limits_are_unlimited_unless_set():
    unset = Settings.from_env({**GOOD, "LLM_REQUESTS_PER_MINUTE": ""})
    assert (unset.llm_tokens_per_minute, unset.llm_requests_per_minute, unset.llm_user_daily_tokens) == (
        None,
        None,
        None,
    )
    assert unset.llm_limit_window_seconds == 60
    limited = Settings.from_env(
        {
            **GOOD,
            "LLM_TOKENS_PER_MINUTE": "40000",
            "LLM_REQUESTS_PER_MINUTE": "50",
            "LLM_USER_DAILY_TOKENS": "200000",
        }
    )
    assert (
        limited.llm_tokens_per_minute,
        limited.llm_requests_per_minute,
        limited.llm_user_daily_tokens,
    ) == (
        40_000,
        50,
        200_000,
    )


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


WEAK_IN_PRODUCTION = {
    "the same value twice": (
        {"ADMIN_API_KEY": GOOD["JWT_SECRET"]},
        "ADMIN_API_KEY",
        "must differ from JWT_SECRET",
    ),
    "one character repeated": ({"JWT_SECRET": "a" * 16}, "JWT_SECRET", "repeats itself"),
    "a word repeated": ({"JWT_SECRET": "passwordpassword"}, "JWT_SECRET", "repeats itself"),
    "two characters repeated": ({"ADMIN_API_KEY": "ab" * 16}, "ADMIN_API_KEY", "repeats itself"),
    "common words": ({"JWT_SECRET": "MySuperSecretPassword1"}, "JWT_SECRET", "common words"),
    "flower admin:admin": ({"FLOWER_BASIC_AUTH": "admin:admin"}, "FLOWER_BASIC_AUTH", "at least 16"),
    "flower password = user": (
        {"FLOWER_BASIC_AUTH": "operator-2f9Kq7Zx:operator-2f9Kq7Zx"},
        "FLOWER_BASIC_AUTH",
        "user name",
    ),
    "flower password = admin key": (
        {"FLOWER_BASIC_AUTH": "ops:" + GOOD["ADMIN_API_KEY"]},
        "FLOWER_BASIC_AUTH",
        "must differ from ADMIN_API_KEY",
    ),
    "flower weak second login": (
        {"FLOWER_BASIC_AUTH": "ops:Wn4-kQz8Lr2_Vx7pTb3m,guest:welcome-to-flower"},
        "FLOWER_BASIC_AUTH",
        "common words",
    ),
}


@pytest.mark.parametrize("case", WEAK_IN_PRODUCTION)
def test_production_refuses_weak_equal_repeated_common_and_default_secrets(case):
    override, setting, reason = WEAK_IN_PRODUCTION[case]
    with pytest.raises(ConfigError) as error:
        Settings.from_env({**GOOD, **override})
    assert error.value.setting == setting
    assert reason in str(error.value)
    assert "\n" not in str(error.value)


def test_production_accepts_random_secrets_and_a_strong_flower_login():
    settings = Settings.from_env({**GOOD, "FLOWER_BASIC_AUTH": "ops:Wn4-kQz8Lr2_Vx7pTb3mYc"})
    assert settings.flower_basic_auth == "ops:Wn4-kQz8Lr2_Vx7pTb3mYc"


def test_cors_origins_default_to_none_in_production_and_to_local_ports_in_development():
    assert Settings.from_env(GOOD).cors_origins == ()
    development = Settings.from_env({**GOOD, "FOCUS_ENV": "development"})
    assert development.cors_origins == ("http://localhost:*", "http://127.0.0.1:*")
    given = Settings.from_env({**GOOD, "CORS_ORIGINS": " https://app.example.org/ , http://localhost:3000"})
    assert given.cors_origins == ("https://app.example.org", "http://localhost:3000")
