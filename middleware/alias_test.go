package middleware_test

import "github.com/durabus/durabus/middleware"

type retryCfg = middleware.RetryConfig

var attemptOf = middleware.Attempt
