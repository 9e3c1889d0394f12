package nstest

import "os"

// Child says whether this process is the one Run started for env.
func Child(env string) bool { return os.Getenv(env) == "1" }
