public enum PachydermMigrationsPlaceholder {}
