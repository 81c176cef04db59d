//! replbd controller and CLI.
