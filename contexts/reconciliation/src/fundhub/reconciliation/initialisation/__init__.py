"""Data initialisation (资金导入 / 数据初始化): the platform's existing merchants and their funds
brought in before it goes live on the depository (``files`` and ``plan`` pure, ``store`` SQL,
``importer`` the use case the operator's ``fundhub init import`` runs)."""
