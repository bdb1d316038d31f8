import MigrationEngine

/// One structured report entry about one key: something the migration dropped, normalized,
/// found inconsistent, or wants a person to know. Never silent: every entry has the key.
/// The engine's own type: `convert`, `plan` and `migrate` report the same notes.
public typealias MigrationNote = ConversionNote
