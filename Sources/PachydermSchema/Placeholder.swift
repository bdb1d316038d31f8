// Generated code goes here (Scripts/generate-protos).
