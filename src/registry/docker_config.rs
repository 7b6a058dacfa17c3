//! Credentials from `$DOCKER_CONFIG/config.json`: `auths`, `credsStore`, `credHelpers`.
